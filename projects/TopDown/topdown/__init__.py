"""Top-down second stage (HRNet, SimpleBaseline, hourglass on detector boxes): see ../README.md."""
