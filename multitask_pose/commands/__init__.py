"""The command-line tools' code. ``tools/<name>.py`` is the tool's help text (its docstring) and
a call to ``<name>.main(argv, parser)`` here, so tests and other programs run a tool through its
functions. This is the top layer: it may import any part of the package, and nothing in the
package imports it. The top-down stage's parts are found through the ``multitask_pose.stages``
and ``multitask_pose.predictors`` entry points (setup.py), never imported by name."""
