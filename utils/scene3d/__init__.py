"""3D scenes seen as posed RGB-D video (ScanNet conventions): geometry, scene folders, BEV renders and markers,
frame coverage. Scenes enter samples as :class:`~utils.data.schema.SceneGeometry` and proposals."""

from utils.scene3d import coverage  # noqa: F401  (registers the "mc-ratio90" / "mc-ratio95" / "max_coverage" samplers)
