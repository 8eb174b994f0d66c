#include "plain.h"
int plain_a(int x) { return x + 1; }
