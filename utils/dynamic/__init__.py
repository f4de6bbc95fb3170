"""Dynamic (4D) spatial reasoning: question templates over moving objects' 3D trajectories."""
