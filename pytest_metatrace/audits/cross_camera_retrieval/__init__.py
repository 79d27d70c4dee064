"""Cross-camera retrieval: finding a photo's twin from another camera (Sec. 4.2)."""
