"""Screenshots of the ZenML dashboard for the README, taken with headless Chromium.

Starts a local ZenML server (`zenml login --local`) in a throw-away config folder on
127.0.0.1, trains on the shipped sample against it (`python run.py --stack local`), marks
the dashboard's first-use survey as done through the REST API, then drives Debian's
`chromium` over the DevTools protocol: the run's DAG, and two visualizations opened from
it (the evaluation plots and the model card). The server is stopped at the end.

usage: python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Needs `chromium` (Debian: `apt install chromium`) and the project's environment.
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH, HEIGHT = 1500, 1200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, chromium: str, profile: Path) -> None:
        import websocket  # websocket-client

        port = _free_port()
        self.process = subprocess.Popen(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                page = next(p for p in pages if p["type"] == "page")
                break
            except (httpx.HTTPError, StopIteration):
                if time.monotonic() > deadline:
                    raise SystemExit("Chromium did not open its DevTools port in 30 s.") from None
                time.sleep(0.3)
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str, settle: float) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(settle)

    def run_js(self, script: str) -> Any:
        result = self.call("Runtime.evaluate", expression=script, returnByValue=True)
        return result.get("result", {}).get("value")

    def click(self, predicate: str, last: bool = False, settle: float = 2) -> bool:
        """Clicks the first (or last) button or tab ``e`` for which the JS ``predicate``
        holds; False when there is none."""
        script = (
            "(() => { const all = [...document.querySelectorAll('button,[role=tab]')]"
            f".filter(e => {predicate}); const hit = all[{'all.length - 1' if last else '0'}];"
            " if (!hit) return false; hit.click(); return true; })()"
        )
        found = bool(self.run_js(script))
        time.sleep(settle)
        return found

    def show_whole_dag(self) -> None:
        """Folds the run details panel away and fits the DAG into the window."""
        self.run_js(
            "(() => { const b = [...document.querySelectorAll('button')];"
            " const i = b.findIndex(e => e.getAttribute('aria-label') === 'Expand details panel');"
            " if (i >= 0 && b[i + 1]) b[i + 1].click(); })()"
        )
        time.sleep(2)
        self.click("e.getAttribute('aria-label') === 'Fit view'")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"wrote {path} ({path.stat().st_size // 1024} kB)")

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit(f"No Chromium at {args.chromium}: apt install chromium, or --chromium.")
    args.out.mkdir(parents=True, exist_ok=True)
    zenml = str(Path(sys.executable).with_name("zenml"))
    with tempfile.TemporaryDirectory(prefix="xray-screenshots-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_STORE")}
        env.update(
            ZENML_CONFIG_PATH=str(root / "zenml"),
            ZENML_REPOSITORY_PATH=str(root / "zenml-repo"),  # leave the project's .zen alone
            BENTOML_HOME=str(root / "bentoml"),
            ZENML_AUTO_OPEN_DASHBOARD="false",
            ZENML_ANALYTICS_OPT_IN="false",
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        login = [zenml, "login", "--local", "--port", str(port), "--ip-address", "127.0.0.1"]
        subprocess.run(login, env=env, check=True, capture_output=True, timeout=240)
        try:
            run = subprocess.run(
                [sys.executable, "run.py", "--stack", "local"],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if run.returncode != 0:
                raise SystemExit(f"run.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
            run_url = re.search(r"^Dashboard:\s+(\S+)$", run.stdout, re.MULTILINE).group(1)
            token = httpx.post(f"{url}/api/v1/login", data={"username": "default", "password": ""})
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            survey_done = {
                "email_opted_in": False,
                "user_metadata": {"finished_onboarding_survey": True},
            }
            httpx.put(f"{url}/api/v1/current-user", json=survey_done, headers=headers)
            browser = DevTools(args.chromium, root / "chromium")
            try:
                browser.open(run_url, settle=15)
                browser.show_whole_dag()
                browser.screenshot(args.out / "run-dag.png")
                shots = (
                    ("evaluation_plotsPngFigure", "evaluation-plots.png"),
                    ("model_card_htmlHTMLString", "model-card.png"),
                )
                for node, name in shots:
                    browser.open(run_url, settle=12)
                    browser.show_whole_dag()
                    if not browser.click(f"e.textContent.startsWith({json.dumps(node)})", settle=4):
                        raise SystemExit(f"No '{node}' node on the run's DAG page.")
                    browser.click("e.textContent.trim() === 'Visualization'", last=True)
                    browser.click("e.textContent.trim() === 'Load Preview'", settle=8)
                    browser.screenshot(args.out / name)
            finally:
                browser.close()
        finally:
            subprocess.run([zenml, "logout", "--local"], env=env, capture_output=True, timeout=120)


if __name__ == "__main__":
    main()
