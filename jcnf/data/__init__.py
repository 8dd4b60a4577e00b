"""Data for jcnf's experiments: image pairs, patches, the embedded photographs, folders, tfds, grain."""

from jcnf.data.arrays import ArrayBatches
from jcnf.data.folder import folder_patches, load_image_folder
from jcnf.data.grain_pipeline import (
    ArraySource,
    ImageFolderSource,
    array_record_source,
    downsample_pair,
    grain_batches,
    random_crop,
    tfds_source,
)
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
from jcnf.data.tfds_images import SUPERRES_DATASETS, load_tfds_images

__all__ = ["ArrayBatches", "ArraySource", "ImageFolderSource", "NUM_BINS", "SUPERRES_DATASETS",
           "TEST_PHOTOS", "TRAIN_PHOTOS", "area_downsample", "array_record_source",
           "bicubic_upsample", "check_images", "downsample_pair", "folder_patches", "grain_batches",
           "grid_patches", "load_image_folder", "load_sample_photos", "load_tfds_images", "make_pairs",
           "quantize", "random_crop", "random_patches", "tfds_source", "to_unit_interval"]
