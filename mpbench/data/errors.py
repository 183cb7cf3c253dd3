"""The one error type the dataset layer raises for problems with the data itself."""


class DatasetError(Exception):
    """A dataset is unknown, missing, corrupt or malformed.

    The message is always one line that names the file (or dataset), says what is wrong and
    how to fix it, so a launcher can print it instead of a traceback.
    """
