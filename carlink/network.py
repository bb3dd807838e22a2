"""What the car, the cloud and the link emulator agree on about the uplink."""

# One packet: a cellular trace's delivery opportunity carries this many bytes (mahimahi's
# convention, which every trace format is converted to), and the emulated link cuts messages so.
MTU = 1500

# The car's round-trip probe (the Ping RPC): how often the daemon sends one by default
# ([cloud] ping_interval_s), and about what one costs on the wire (HTTP/2 and gRPC framing).
PING_INTERVAL_S = 0.5
PING_BYTES = 100
