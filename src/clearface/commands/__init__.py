"""The sub-commands of ``clearface`` (the parser is :mod:`clearface.cli`).

Each command first checks its inputs and outputs (nothing is written when one is refused), then calls the
library, then prints: prose on stderr, and with ``--json`` the result as JSON on stdout.
"""

from .gan import cmd_gan
from .runs import cmd_audit, cmd_calibrate, cmd_ensemble, cmd_pseudolabel, cmd_train
from .scoring import cmd_evaluate, cmd_export, cmd_models, cmd_predict, cmd_report, cmd_serve

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "report": cmd_report, "predict": cmd_predict,
            "export": cmd_export, "serve": cmd_serve, "audit": cmd_audit, "ensemble": cmd_ensemble,
            "calibrate": cmd_calibrate, "pseudolabel": cmd_pseudolabel, "models": cmd_models,
            "gan": cmd_gan}
