"""The error users see: one line naming the problem and what to do."""


class LiftswapError(ValueError):
    """Bad input to liftswap (unknown model, missing or corrupt file, wrong checkpoint, bad recipe).

    The command line prints its message on one line and exits with status 2.
    """
