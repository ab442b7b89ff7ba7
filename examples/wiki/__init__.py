"""A decentralised wiki on Butter: a web page and a command line over one shared :class:`Wiki`.

Run ``python -m examples.wiki --help`` from the repository root; README.md walks through a demo.
"""
