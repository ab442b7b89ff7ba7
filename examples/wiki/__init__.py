"""A decentralised wiki on Butter (SPEC §8.4): a web page and a command line over one shared :class:`Wiki`.

Run ``python -m examples.wiki --help`` from the repository root; README.md walks through a demo.
"""
