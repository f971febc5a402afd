"""Calibration of a deployed detector: A/V offset (sync), confidences (confidence), reduced
precisions (precision). `python -m calibrate` lists the commands."""
