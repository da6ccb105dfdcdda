"""A script for Isolate.spawn_uri by path: ``main(args, message)`` runs in the isolate."""


def main(args, message):  # type: ignore[no-untyped-def]
    message.send(("script", list(args)))
