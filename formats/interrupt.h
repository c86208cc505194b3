// Cooperative interruption. install_interrupt_handlers() makes SIGINT/SIGTERM set a flag
// (and unlink any pending temporary output at once); long loops call check_interrupted(),
// which throws Interrupted so destructors clean up and main exits with 128 + signal.
#pragma once

namespace smolq {

void install_interrupt_handlers();
// Throws Interrupted(signal) if a signal arrived.
void check_interrupted();
int pending_signal();

}  // namespace smolq
