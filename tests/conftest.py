import os
from pathlib import Path

# Inductor's compile cache stays inside the project (never the shared default), also for bare pytest runs.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "inductor"))
