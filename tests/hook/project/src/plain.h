#pragma once
int plain_a(int x);
int plain_b(int x);
