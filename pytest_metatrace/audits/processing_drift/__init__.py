"""Processing drift: how far each processing class moves an image's embedding."""
