"""Steps of the monitoring pipeline."""
