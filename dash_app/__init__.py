"""fraudflow dash_app package."""
