#include "plain.h"
int plain_b(int x) { return x * 2; }
