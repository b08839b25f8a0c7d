"""Code that only one chapter needs (one module per chapter or topic), kept out of the core package."""
