"""Emulated Infor ION API Gateway with an M3, a SyteLine (CSI) and an FSM tenant over one dataset.

Use :func:`start_infor` (async context manager), :func:`launch_infor` (call ``stop()``), or
:func:`build_app` with an :class:`InforState`.
"""

from ml_connector.sandbox.infor.app import RunningInfor, build_app, launch_infor, start_infor
from ml_connector.sandbox.infor.state import CSI_TENANT, FSM_TENANT, M3_TENANT, InforState

__all__ = [
    "CSI_TENANT",
    "FSM_TENANT",
    "M3_TENANT",
    "InforState",
    "RunningInfor",
    "build_app",
    "launch_infor",
    "start_infor",
]
