package sluice.it;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.TreeSet;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One consumer-group member for tests/integration/test_groups.py.
 *
 * <pre>
 * GroupMember --bootstrap H:P --group G --topic T --assignor range|cooperative-sticky
 *             --session-ms MS --stop-file F
 * </pre>
 *
 * Subscribes to T in group G and polls until F exists (then closes, leaving the
 * group) or the process is killed (no leave). Prints "ASSIGNED p,p,..." (sorted
 * partition numbers, possibly none) whenever its assignment changes, and
 * "REVOKED p,..." for partitions taken away, flushing each line.
 */
public final class GroupMember {
    public static void main(String[] argv) throws Exception {
        String bootstrap = null, group = null, topic = null, assignor = "range", stop = null;
        int sessionMs = 6000;
        for (int i = 0; i + 1 < argv.length; i += 2) {
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = argv[i + 1];
                case "--group" -> group = argv[i + 1];
                case "--topic" -> topic = argv[i + 1];
                case "--assignor" -> assignor = argv[i + 1];
                case "--session-ms" -> sessionMs = Integer.parseInt(argv[i + 1]);
                case "--stop-file" -> stop = argv[i + 1];
                default -> throw new IllegalArgumentException("unknown flag " + argv[i]);
            }
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Integer.toString(sessionMs));
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
              assignor.equals("cooperative-sticky")
                  ? "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"
                  : "org.apache.kafka.clients.consumer.RangeAssignor");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        TreeSet<Integer> last = null;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic));
            while (stop == null || !Files.exists(Path.of(stop))) {
                ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(200));
                TreeSet<Integer> now = new TreeSet<>();
                for (TopicPartition tp : c.assignment()) {
                    now.add(tp.partition());
                }
                if (last == null || !now.equals(last)) {
                    if (last != null) {
                        TreeSet<Integer> gone = new TreeSet<>(last);
                        gone.removeAll(now);
                        if (!gone.isEmpty()) {
                            System.out.println("REVOKED " + join(gone));
                        }
                    }
                    System.out.println("ASSIGNED " + join(now));
                    System.out.flush();
                    last = now;
                }
                if (!records.isEmpty()) {
                    c.commitAsync();
                }
            }
        }
        System.out.println("CLOSED");
        System.out.flush();
    }

    static String join(TreeSet<Integer> s) {
        StringBuilder b = new StringBuilder();
        for (int x : s) {
            if (b.length() > 0) {
                b.append(',');
            }
            b.append(x);
        }
        return b.toString();
    }
}
