"""Datasets shipped with edgeopt (see PROVENANCE.md for sources, licences and the rebuild command)."""
