"""`python -m nasjax COMMAND ...`: the library's command line. Commands: describe (`nasjax.describe`)."""

import sys

COMMANDS = ("describe",)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m nasjax {{{','.join(COMMANDS)}}} ...; got {argv[:1] or 'no command'}",
              file=sys.stderr)
        return 2
    from nasjax import describe
    return describe.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
