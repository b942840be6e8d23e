"""The model files: configurations, models, losses and the post-hoc inference adjustment.

These files travel as remote code next to every saved model (`save_pretrained` copies them with the weights), so
they import only torch, transformers and each other (single-dot sibling imports), never the rest of this package.
The Auto-class registration lives in `modeling_livt/__init__.py`.
"""
