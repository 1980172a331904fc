"""Import a file of scripts/ as a module, so tests can call its functions directly."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
# a script may import a sibling module of scripts/, as it does when run as `python scripts/<name>.py`
if str(SCRIPTS) not in sys.path:
    sys.path.append(str(SCRIPTS))


def load_script(filename: str) -> ModuleType:
    """The module defined by scripts/<filename> (executed on each call; the scripts keep no state)."""
    spec = importlib.util.spec_from_file_location(Path(filename).stem, SCRIPTS / filename)
    module = importlib.util.module_from_spec(spec)
    # registered before it runs: a dataclass defined in the script looks its module up there
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
