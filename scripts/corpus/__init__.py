"""The stages of scripts/build_corpus.py (the pretraining corpus of the bundled weights), one module each."""
