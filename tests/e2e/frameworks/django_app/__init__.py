"""A small Django application (models only) for the Django acceptance test."""
