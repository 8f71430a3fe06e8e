"""Video: container decoding and encoding, frame conversions, temporal stabilisation, and the
pipeline that stylizes a whole file."""
