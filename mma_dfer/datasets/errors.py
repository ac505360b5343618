"""The registry's one error, apart from the package so that its readers (``manifest``) and the
package (which reads manifests) import it without importing each other."""


class DatasetError(ValueError):
    """A dataset's file, row or setting is invalid; the message names the file and the field."""
