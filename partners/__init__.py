"""Partners, their keys, and the signed partner API."""
