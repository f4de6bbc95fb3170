"""3D scenes seen as posed RGB-D video (ScanNet conventions): geometry, scene folders, BEV renders and markers,
frame coverage. Scenes enter samples as :class:`~utils.data.schema.SceneGeometry` and proposals."""
