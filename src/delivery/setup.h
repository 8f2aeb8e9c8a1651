// Translates the [delivery], [dns] and [[route]] configuration into the
// options of the queue (retry schedule) and of outbound delivery, so that
// server start-up needs only a few lines for them.
#pragma once

#include "config/config.h"
#include "delivery/outbound.h"
#include "queue/queue.h"

namespace tern::delivery {

OutboundOptions OutboundOptionsFrom(const config::Config& cfg);
void ApplyDeliveryConfig(const config::Config& cfg, queue::Options* options);
smtp::client::TlsPolicy TlsPolicyFrom(const std::string& text);

}  // namespace tern::delivery
