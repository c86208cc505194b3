#include "formats/interrupt.h"

#include <csignal>

#include "formats/atomic_file.h"
#include "formats/error.h"

namespace smolq {
namespace {
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  if (g_signal != 0) {
    // Second signal: the user insists. Clean up temp files and die with the signal.
    unlink_pending_temp_files_signal_safe();
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal = sig;
}
}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int pending_signal() { return g_signal; }

void check_interrupted() {
  if (g_signal != 0) throw Interrupted(g_signal);
}

}  // namespace smolq
