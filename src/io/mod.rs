//! Reading meshes and volumes, writing meshes, volumes and images (one file per format).
