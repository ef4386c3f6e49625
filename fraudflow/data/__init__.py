"""Transaction data: the creditcard.csv layout, its loader, and a synthetic look-alike."""
