package sluice.it;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Java (Apache kafka-clients) program driven by tests/integration.
 *
 * <pre>
 * ClientMain --bootstrap H:P create-topics [--partitions N] TOPIC...
 * ClientMain --bootstrap H:P produce --start S --count N --base-ts T TOPIC=CODEC...
 * ClientMain --bootstrap H:P consume --count N [--partitions P] --out-dir D [--timeout S] TOPIC...
 *            (--count -1: read each partition up to its end offset at start)
 * ClientMain --bootstrap H:P offsets-for-times TOPIC:PARTITION:TS...
 * ClientMain --bootstrap H:P stream --topic T --acks-file F --rate R [--stop-file X] [--seconds S]
 * </pre>
 *
 * Record content and the dump format are those of tests/integration/clients/common.py.
 * The producers keep Kafka's default settings (acks=all, idempotence on), changing
 * only batching (linger.ms, batch.size) and compression.
 */
public final class ClientMain {
    static final String CLIENT = "java";
    static final HexFormat HEX = HexFormat.of();

    public static void main(String[] argv) throws Exception {
        List<String> args = new ArrayList<>(Arrays.asList(argv));
        String bootstrap = null;
        if (args.size() >= 2 && args.get(0).equals("--bootstrap")) {
            bootstrap = args.get(1);
            args = args.subList(2, args.size());
        }
        if (bootstrap == null || args.isEmpty()) {
            System.err.println("usage: ClientMain --bootstrap H:P <command> ... (see source)");
            System.exit(2);
        }
        String cmd = args.get(0);
        Opts o = new Opts(args.subList(1, args.size()));
        int rc;
        switch (cmd) {
            case "create-topics": rc = createTopics(bootstrap, o); break;
            case "produce": rc = produce(bootstrap, o); break;
            case "consume": rc = consume(bootstrap, o); break;
            case "offsets-for-times": rc = offsetsForTimes(bootstrap, o); break;
            case "stream": rc = stream(bootstrap, o); break;
            default: System.err.println("unknown command " + cmd); rc = 2;
        }
        System.out.flush();
        System.exit(rc);
    }

    /** --name value options followed by positional arguments. */
    static final class Opts {
        final Map<String, String> named = new HashMap<>();
        final List<String> pos = new ArrayList<>();

        Opts(List<String> a) {
            for (int i = 0; i < a.size(); i++) {
                String s = a.get(i);
                if (s.startsWith("--") && i + 1 < a.size()) {
                    named.put(s.substring(2), a.get(++i));
                } else {
                    pos.add(s);
                }
            }
        }

        String str(String k, String dflt) {
            String v = named.get(k);
            if (v == null && dflt == null) throw new IllegalArgumentException("missing --" + k);
            return v == null ? dflt : v;
        }

        long num(String k, Long dflt) {
            return Long.parseLong(str(k, dflt == null ? null : Long.toString(dflt)));
        }
    }

    // ---- deterministic content (same as common.py) ----
    static byte[] key(long i) {
        return ("key-" + (i % 1000)).getBytes(StandardCharsets.UTF_8);
    }

    static byte[] value(String client, String codec, long i) {
        String pat = String.format("%08x", (i * 2654435761L) & 0xffffffffL);
        StringBuilder sb = new StringBuilder(128).append(client).append('-').append(codec)
            .append('-').append(i).append('-');
        for (int k = 0; k < 13; k++) sb.append(pat);
        return sb.substring(0, 100).getBytes(StandardCharsets.UTF_8);
    }

    static List<Header> headers(String client, String codec, long i) {
        List<Header> h = new ArrayList<>(2);
        h.add(new RecordHeader("src", (client + "-" + codec).getBytes(StandardCharsets.UTF_8)));
        h.add(new RecordHeader("idx", Long.toString(i).getBytes(StandardCharsets.UTF_8)));
        return h;
    }

    static String hex(byte[] b) {
        return b == null ? "-" : HEX.formatHex(b);
    }

    static void dump(Writer w, ConsumerRecord<byte[], byte[]> r) throws IOException {
        StringBuilder sb = new StringBuilder(512);
        sb.append(r.partition()).append('\t').append(r.offset()).append('\t').append(r.timestamp())
            .append('\t').append(hex(r.key())).append('\t').append(hex(r.value())).append('\t');
        boolean first = true;
        for (Header h : r.headers()) {
            if (!first) sb.append(';');
            first = false;
            sb.append(h.key()).append('=').append(hex(h.value()));
        }
        sb.append('\n');
        w.write(sb.toString());
    }

    // ---- clients ----
    static Properties producerProps(String bootstrap, String codec) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(256 * 1024));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        return p;
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10000");
        p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, Integer.toString(16 * 1024 * 1024));
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(4 * 1024 * 1024));
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        return new KafkaConsumer<>(p);
    }

    static int createTopics(String bootstrap, Opts o) throws Exception {
        int parts = (int) o.num("partitions", 6L);
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(p)) {
            List<NewTopic> ts = new ArrayList<>();
            for (String t : o.pos) ts.add(new NewTopic(t, parts, (short) 1));
            admin.createTopics(ts).all().get(30, TimeUnit.SECONDS);
        }
        System.out.println("{\"created\": " + o.pos.size() + "}");
        return 0;
    }

    static int produce(String bootstrap, Opts o) throws Exception {
        long start = o.num("start", null), count = o.num("count", null), baseTs = o.num("base-ts", null);
        AtomicLong acked = new AtomicLong(), failed = new AtomicLong();
        AtomicReference<Exception> firstErr = new AtomicReference<>();
        for (String spec : o.pos) {
            int eq = spec.lastIndexOf('=');
            String topic = spec.substring(0, eq), codec = spec.substring(eq + 1);
            try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(producerProps(bootstrap, codec))) {
                for (long i = start; i < start + count; i++) {
                    ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, null, baseTs + 2 * i,
                        key(i), value(CLIENT, codec, i), headers(CLIENT, codec, i));
                    prod.send(r, (md, e) -> {
                        if (e == null) {
                            acked.incrementAndGet();
                        } else {
                            failed.incrementAndGet();
                            firstErr.compareAndSet(null, e);
                        }
                    });
                }
                prod.flush();
            }
        }
        Exception e = firstErr.get();
        System.out.println("{\"acked\": " + acked.get() + ", \"failed\": " + failed.get() + ", \"errors\": ["
            + (e == null ? "" : "\"" + e.toString().replace('"', '\'') + "\"") + "]}");
        return failed.get() == 0 && acked.get() == count * o.pos.size() ? 0 : 1;
    }

    static int consume(String bootstrap, Opts o) throws Exception {
        long count = o.num("count", null);
        int parts = (int) o.num("partitions", 6L);
        Path outDir = Path.of(o.str("out-dir", null));
        long deadline = System.nanoTime() + (long) (Double.parseDouble(o.str("timeout", "60")) * 1e9);
        Map<String, BufferedWriter> files = new HashMap<>();
        Map<String, Long> got = new HashMap<>();
        List<TopicPartition> tps = new ArrayList<>();
        for (String t : o.pos) {
            files.put(t, Files.newBufferedWriter(outDir.resolve(t + ".tsv"), StandardCharsets.UTF_8));
            got.put(t, 0L);
            for (int p = 0; p < parts; p++) tps.add(new TopicPartition(t, p));
        }
        boolean ok;
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = count < 0 ? c.endOffsets(tps) : null;
            long total = 0, need = count * o.pos.size();
            while (System.nanoTime() < deadline) {
                if (count >= 0 && total >= need) break;
                if (count < 0) {
                    boolean done = true;
                    for (TopicPartition tp : tps) {
                        if (c.position(tp) < ends.get(tp)) { done = false; break; }
                    }
                    if (done) break;
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    dump(files.get(r.topic()), r);
                    got.merge(r.topic(), 1L, Long::sum);
                    total++;
                }
            }
            if (count >= 0) {
                ok = total >= need;
            } else {
                ok = true;
                for (TopicPartition tp : tps) ok &= c.position(tp) >= ends.get(tp);
            }
        }
        for (BufferedWriter w : files.values()) w.close();
        StringBuilder sb = new StringBuilder("{\"consumed\": {");
        String sep = "";
        for (String t : o.pos) { sb.append(sep).append('"').append(t).append("\": ").append(got.get(t)); sep = ", "; }
        System.out.println(sb.append("}}"));
        return ok ? 0 : 1;
    }

    static int offsetsForTimes(String bootstrap, Opts o) {
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap)) {
            for (String q : o.pos) { // one call per query: several may name the same partition
                String[] f = q.split(":");
                String topic = String.join(":", Arrays.copyOfRange(f, 0, f.length - 2));
                TopicPartition tp = new TopicPartition(topic, Integer.parseInt(f[f.length - 2]));
                long ts = Long.parseLong(f[f.length - 1]);
                OffsetAndTimestamp r = c.offsetsForTimes(Map.of(tp, ts), Duration.ofSeconds(20)).get(tp);
                System.out.println(topic + " " + tp.partition() + " " + ts + " " + (r == null ? -1 : r.offset()));
            }
        }
        return 0;
    }

    /**
     * A paced, numbered stream (acks=all, idempotence on) for the SIGKILL test. Every
     * acknowledged record is appended to the acks file as "partition offset seq".
     * Runs until --stop-file exists or --seconds (a bound) pass, then closes the producer
     * (waiting for what is in flight). While the broker is down, send() blocks on metadata;
     * the pacing then catches up.
     */
    static int stream(String bootstrap, Opts o) throws Exception {
        String topic = o.str("topic", null);
        long seconds = o.num("seconds", 120L), rate = o.num("rate", 5000L);
        Path stopFile = o.named.containsKey("stop-file") ? Path.of(o.str("stop-file", null)) : null;
        Properties p = producerProps(bootstrap, o.str("codec", "none"));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        AtomicLong acked = new AtomicLong(), failed = new AtomicLong();
        AtomicReference<Exception> firstErr = new AtomicReference<>();
        long sent = 0;
        try (BufferedWriter w = Files.newBufferedWriter(Path.of(o.str("acks-file", null)), StandardCharsets.UTF_8)) {
            KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p);
            long t0 = System.nanoTime(), end = t0 + seconds * 1_000_000_000L, nextCheck = 0;
            while (System.nanoTime() < end) {
                if (stopFile != null && System.nanoTime() > nextCheck) {
                    if (Files.exists(stopFile)) break;
                    nextCheck = System.nanoTime() + 100_000_000L;
                }
                long due = (System.nanoTime() - t0) * rate / 1_000_000_000L;
                if (sent >= due) {
                    Thread.sleep(1);
                    continue;
                }
                final long seq = sent++;
                byte[] v = String.format("seq-%012d-", seq).getBytes(StandardCharsets.UTF_8);
                byte[] val = Arrays.copyOf(v, 100);
                Arrays.fill(val, v.length, val.length, (byte) '.');
                prod.send(new ProducerRecord<>(topic, Long.toString(seq).getBytes(StandardCharsets.UTF_8), val),
                    (md, e) -> {
                        if (e == null) {
                            acked.incrementAndGet();
                            synchronized (w) {
                                try {
                                    w.write(md.partition() + " " + md.offset() + " " + seq + "\n");
                                } catch (IOException io) {
                                    throw new RuntimeException(io);
                                }
                            }
                        } else {
                            failed.incrementAndGet();
                            firstErr.compareAndSet(null, e);
                        }
                    });
            }
            prod.close(Duration.ofSeconds(60));
        }
        Exception e = firstErr.get();
        System.out.println("{\"sent\": " + sent + ", \"acked\": " + acked.get() + ", \"failed\": " + failed.get()
            + ", \"errors\": [" + (e == null ? "" : "\"" + e.toString().replace('"', '\'') + "\"") + "]}");
        return 0;
    }
}
