"""Behaviour of the mesh.v1 contract shared by every server: errors, validation, serving."""
