#include "cliptune.h"

const char *ct_version(void) { return CLIPTUNE_VERSION; }
