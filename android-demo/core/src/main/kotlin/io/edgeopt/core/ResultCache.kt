package io.edgeopt.core

import org.json.JSONException
import org.json.JSONObject
import java.text.Normalizer

/** Cache schema version (`PRAGMA user_version`) this core reads and writes: the runtime's `CACHE_SCHEMA_VERSION`. */
const val CACHE_SCHEMA_VERSION = 1

/** `PRAGMA application_id` of every edgeopt cache file ("edop"): the runtime's `CACHE_APPLICATION_ID`. */
const val CACHE_APPLICATION_ID = 0x65646F70
const val DEFAULT_MAX_ENTRIES = 10_000
const val DEFAULT_MAX_BYTES = 16L * 1024 * 1024
const val DEFAULT_TTL_S = 7 * 24 * 3600.0

/** The text as the cache key sees it: NFC, stripped, each run of whitespace made one space (Python `\s`). */
fun normalizeText(text: String): String {
    val nfc = PyCompat.strip(Normalizer.normalize(text, Normalizer.Form.NFC))
    val sb = StringBuilder(nfc.length)
    var inSpace = false
    nfc.codePoints().forEach { cp ->
        if (PyCompat.isSpace(cp)) {
            if (!inSpace) sb.append(' ')
            inSpace = true
        } else {
            sb.appendCodePoint(cp)
            inSpace = false
        }
    }
    return sb.toString()
}

/** The options the runtime puts in every key: `backend`, `labels` (Python JSON, ASCII-escaped) and `max_seq_len`. */
fun keyOptions(backend: String, labels: List<String>, maxSeqLen: Int): Map<String, String> = mapOf(
    "backend" to backend,
    "labels" to labels.joinToString(", ", "[", "]") { PyCompat.jsonString(it) },
    "max_seq_len" to maxSeqLen.toString(),
)

/** SHA-256 hex of `fingerprint + "\n" + options + "\n" + normalizeText(text)`; options are `k=v` sorted by key, `;`-joined. */
fun cacheKey(fingerprint: String, text: String, options: Map<String, String> = emptyMap()): String {
    val opts = options.entries.sortedWith(compareBy(PyCompat.codePointOrder) { it.key }).joinToString(";") { "${it.key}=${it.value}" }
    return PyCompat.sha256Hex(PyCompat.utf8SurrogatePass("$fingerprint\n$opts\n${normalizeText(text)}"))
}

/** The cached answer for one text, in the JSON the Python runtime stores. */
data class CachedResult(val label: String, val score: Double, val scores: Map<String, Double>, val truncated: Boolean) {
    /** The value column as Python writes it: `json.dumps(value, separators=(",", ":"), sort_keys=True)`. */
    fun toJson(): String {
        val scoreItems = scores.entries.sortedWith(compareBy(PyCompat.codePointOrder) { it.key })
            .joinToString(",") { PyCompat.jsonString(it.key) + ":" + PyCompat.floatRepr(it.value) }
        return "{\"label\":${PyCompat.jsonString(label)},\"score\":${PyCompat.floatRepr(score)}," +
            "\"scores\":{$scoreItems},\"truncated\":$truncated}"
    }

    companion object {
        /** Reads a value; null when it is not shaped like one for these labels (another client's data is a miss). */
        fun fromJson(json: String, labels: List<String>): CachedResult? = try {
            val o = JSONObject(json)
            val s = o.getJSONObject("scores")
            val keys = s.keys().asSequence().map { it.toString() }.toSet()
            val label = o.getString("label")
            if (label !in labels || keys != labels.toSet()) null
            else CachedResult(label, o.getDouble("score"), labels.associateWith { s.getDouble(it) }, o.getBoolean("truncated"))
        } catch (e: JSONException) {
            null
        }
    }
}

/** Counters (shared by every process using the file) and sizes of a cache. */
data class CacheStats(val hits: Long, val misses: Long, val evictions: Long, val entries: Long, val bytes: Long)

/**
 * The result cache on the Python runtime's SQLite schema (runtime/README.md, "Cache file format"): same keys,
 * JSON values, TTL, `max_entries` / `max_bytes` LRU bounds, counters and `BEGIN IMMEDIATE` writes, so the app
 * and the Python runtime can read each other's files. A lookup writes its `last_used` refresh and hit/miss
 * counts at once, in one transaction per call; the Python runtime batches them instead (both are allowed by the
 * format, and on a phone a lookup is rare next to running the model).
 *
 * @param db an open database (see [SqlDatabase]); the cache closes it in [close].
 * @param clock seconds since the epoch (tests pass a fixed one).
 * @throws CacheError bad bounds, a file that fails `quick_check`, or a schema newer than [CACHE_SCHEMA_VERSION].
 */
class ResultCache(
    private val db: SqlDatabase,
    val maxEntries: Int = DEFAULT_MAX_ENTRIES,
    val maxBytes: Long = DEFAULT_MAX_BYTES,
    val ttlS: Double? = DEFAULT_TTL_S,
    val storeText: Boolean = false,
    private val clock: () -> Double = { System.currentTimeMillis() / 1000.0 },
) : AutoCloseable {
    init {
        if (maxEntries < 1) throw CacheError("max_entries $maxEntries must be a positive integer")
        if (maxBytes < 1) throw CacheError("max_bytes $maxBytes must be a positive integer")
        if (ttlS != null && !(ttlS > 0)) throw CacheError("ttl_s $ttlS must be a positive number of seconds or null")
        val check = sql { db.query("PRAGMA quick_check") { it.string(0) }.firstOrNull() }
        if (check != "ok") throw CacheError("the cache file fails quick_check ($check); delete it and start a new one")
        migrate()
    }

    /** Brings the file to [CACHE_SCHEMA_VERSION]; refuses a newer one, which this app must not write. */
    private fun migrate() = sql {
        db.immediateTransaction {
            val found = db.query("PRAGMA user_version") { it.long(0) }.first()
            if (found > CACHE_SCHEMA_VERSION) {
                throw CacheError("cache schema version $found is newer than this app reads ($CACHE_SCHEMA_VERSION); update the app or use another cache file")
            }
            if (found < 1) {
                db.update(
                    "CREATE TABLE results (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, value TEXT NOT NULL, text TEXT, " +
                        "size INTEGER NOT NULL, created_at REAL NOT NULL, expires_at REAL, last_used REAL NOT NULL)",
                )
                db.update("CREATE INDEX results_last_used ON results(last_used)")
                db.update("CREATE INDEX results_fingerprint ON results(fingerprint)")
                db.update("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
                for (name in listOf("hits", "misses", "evictions")) db.update("INSERT INTO counters(name, value) VALUES (?, 0)", name)
            }
            // PRAGMA takes no parameters; the values are our own constants.
            db.update("PRAGMA user_version = $CACHE_SCHEMA_VERSION")
            db.update("PRAGMA application_id = $CACHE_APPLICATION_ID")
        }
    }

    /** The stored value of [key], or null when absent or expired (an expired entry is deleted). */
    fun get(key: String): String? = getMany(listOf(key))[key]

    /** The values of the keys present and not expired, in one transaction that also counts hits and misses. */
    fun getMany(keys: List<String>): Map<String, String> {
        val wanted = keys.distinct()
        if (wanted.isEmpty()) return emptyMap()
        return sql {
            db.immediateTransaction {
                val now = clock()
                val found = LinkedHashMap<String, String>()
                for (k in wanted) {
                    val row = db.query("SELECT value, expires_at FROM results WHERE key = ?", k) { r ->
                        r.string(0)!! to (if (r.isNull(1)) null else r.double(1))
                    }.firstOrNull() ?: continue
                    val expires = row.second
                    if (expires != null && expires <= now) db.update("DELETE FROM results WHERE key = ?", k) else found[k] = row.first
                }
                for (k in found.keys) db.update("UPDATE results SET last_used = max(last_used, ?) WHERE key = ?", now, k)
                bump("hits", found.size)
                bump("misses", wanted.size - found.size)
                found
            }
        }
    }

    /** Stores one value; see [putMany]. */
    fun put(key: String, fingerprint: String, valueJson: String, text: String? = null) = putMany(listOf(Entry(key, fingerprint, valueJson, text)))

    /** One row to store; [text] is kept (normalized) only with `storeText`. */
    data class Entry(val key: String, val fingerprint: String, val valueJson: String, val text: String? = null)

    /** Stores values in one transaction, then drops expired entries and evicts least recently used ones beyond the bounds. */
    fun putMany(entries: List<Entry>) {
        val now = clock()
        val expires = ttlS?.let { now + it }
        val rows = entries.mapNotNull { e ->
            val stored = if (storeText && e.text != null) normalizeText(e.text) else null
            val size = e.key.length + e.valueJson.toByteArray(Charsets.UTF_8).size + (stored?.let { PyCompat.utf8SurrogatePass(it).size } ?: 0)
            if (size <= maxBytes) Triple(e, stored, size) else null
        }
        if (rows.isEmpty()) return
        sql {
            db.immediateTransaction {
                for ((e, stored, size) in rows) {
                    db.update(
                        "INSERT OR REPLACE INTO results(key, fingerprint, value, text, size, created_at, expires_at, last_used) " +
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        e.key, e.fingerprint, e.valueJson, stored, size.toLong(), now, expires, now,
                    )
                }
                evict(now)
            }
        }
    }

    private fun evict(now: Double) {
        db.update("DELETE FROM results WHERE expires_at IS NOT NULL AND expires_at <= ?", now)
        var (count, total) = db.query("SELECT count(*), coalesce(sum(size), 0) FROM results") { it.long(0) to it.long(1) }.first()
        if (count <= maxEntries && total <= maxBytes) return
        val victims = ArrayList<String>()
        for ((key, size) in db.query("SELECT key, size FROM results ORDER BY last_used ASC, created_at ASC") { it.string(0)!! to it.long(1) }) {
            if (count <= maxEntries && total <= maxBytes) break
            victims += key
            count -= 1
            total -= size
        }
        victims.forEach { db.update("DELETE FROM results WHERE key = ?", it) }
        bump("evictions", victims.size)
    }

    private fun bump(counter: String, delta: Int) {
        if (delta != 0) db.update("UPDATE counters SET value = value + ? WHERE name = ?", delta.toLong(), counter)
    }

    /** Deletes every entry and resets the counters; returns the entries deleted. */
    fun clear(): Int = sql {
        db.immediateTransaction { db.update("DELETE FROM results").also { db.update("UPDATE counters SET value = 0") } }
    }

    /** Deletes the entries of one fingerprint (all entries when null); returns how many. */
    fun invalidate(fingerprint: String? = null): Int = sql {
        db.immediateTransaction {
            if (fingerprint == null) db.update("DELETE FROM results") else db.update("DELETE FROM results WHERE fingerprint = ?", fingerprint)
        }
    }

    /** Deletes the entries of every other fingerprint (done when a bundle loads); returns how many. */
    fun keepOnly(fingerprint: String): Int = sql {
        db.immediateTransaction { db.update("DELETE FROM results WHERE fingerprint != ?", fingerprint) }
    }

    /** Counters and sizes. */
    fun stats(): CacheStats = sql {
        db.immediateTransaction {
            val counters = db.query("SELECT name, value FROM counters") { it.string(0)!! to it.long(1) }.toMap()
            val (count, total) = db.query("SELECT count(*), coalesce(sum(size), 0) FROM results") { it.long(0) to it.long(1) }.first()
            CacheStats(counters["hits"] ?: 0, counters["misses"] ?: 0, counters["evictions"] ?: 0, count, total)
        }
    }

    override fun close() = db.close()

    private inline fun <T> sql(block: () -> T): T = try {
        block()
    } catch (e: EdgeoptException) {
        throw e
    } catch (e: Exception) {
        throw CacheError("result cache: ${e.message?.lineSequence()?.firstOrNull() ?: e.javaClass.simpleName}", e)
    }
}
