"""Input and output: one path rule, one layout reader, image decoding (JPEG, PNG, DICOM),
data loading, image statistics, checkpoints and downloads."""
