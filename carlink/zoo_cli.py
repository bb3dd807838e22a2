"""``carlink models``: the model zoo shared by car and cloud."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("models", help="list and fetch the models of the zoo")
    p.set_defaults(parser=p)
