"""Data for jcnf's experiments: image pairs, patches, the embedded photographs, folders, tfds."""

from jcnf.data.arrays import ArrayBatches
from jcnf.data.folder import folder_patches, load_image_folder
from jcnf.data.images import (
                              NUM_BINS,
                              area_downsample,
                              bicubic_upsample,
                              check_images,
                              make_pairs,
                              quantize,
                              to_unit_interval,
)
from jcnf.data.patches import grid_patches, random_patches
from jcnf.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, load_sample_photos
from jcnf.data.pipeline import SuperResolutionBatches
from jcnf.data.tfds_images import SUPERRES_DATASETS, load_tfds_images

__all__ = ["ArrayBatches", "NUM_BINS", "SUPERRES_DATASETS", "SuperResolutionBatches", "TEST_PHOTOS", "TRAIN_PHOTOS",
           "area_downsample", "bicubic_upsample", "check_images", "folder_patches", "grid_patches",
           "load_image_folder", "load_sample_photos", "load_tfds_images", "make_pairs", "quantize",
           "random_patches", "to_unit_interval"]
