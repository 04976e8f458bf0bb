/* PNG encoding (libpng) for what cliptune writes: label maps as 8-bit
 * palette PNGs with VOC's colour map (the scenes set, segmentation
 * predictions) and RGB pictures (segmentation overlays). Files are written
 * atomically (temp file + rename, no fsync). */
#ifndef CT_DATA_PNG_WRITE_H
#define CT_DATA_PNG_WRITE_H

#include <stdint.h>

#include "cliptune.h"

/* VOC's colour map (VOCdevkit's labelcolormap / the bitget palette): the
 * bits of index i spread over the high bits of R, G and B; rgb (256, 3). */
void ct_voc_palette(uint8_t rgb[768]);
/* idx (h, w) as an 8-bit palette PNG with VOC's colour map. */
ct_status ct_png_write_palette(const char *path, const uint8_t *idx, int w, int h);
/* rgb (h, w, 3) as an 8-bit RGB PNG. */
ct_status ct_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

#endif
