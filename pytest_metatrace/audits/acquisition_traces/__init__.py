"""Acquisition traces: what the encoder knows about the camera (paper Sec. 3.2)."""
