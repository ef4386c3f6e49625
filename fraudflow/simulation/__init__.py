"""The transaction simulator behind `fraudflow simulate`."""
