"""Search your own sounds: embed a collection once into a faiss index, query it by text, listen."""
