"""greet: ``Greet.Hello`` and ``Greet.Count`` (registry test plugin)."""

import os

from .helpers.words import greeting

SETTINGS = {"unhealthy_file": ""}


def setup(config):
    SETTINGS["unhealthy_file"] = str(config.get("unhealthy_file", ""))


class Greeter:
    """Each public method becomes Greet.<Method>."""

    def __init__(self):
        self.calls = 0

    def Hello(self, name="world"):
        self.calls += 1
        return f"{greeting()}, {name}"

    def Count(self):
        return self.calls


def handler():
    return "Greet", Greeter()


def health():
    path = SETTINGS["unhealthy_file"]
    if path and os.path.exists(path):
        return f"{path} exists"
    return None
