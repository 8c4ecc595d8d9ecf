package io.edgeopt.core

import org.json.JSONException
import org.json.JSONObject
import java.io.File
import java.io.IOException
import java.nio.file.FileAlreadyExistsException
import java.nio.file.Files
import java.nio.file.attribute.PosixFilePermissions
import java.security.SecureRandom
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec

/** Cache schema version (`PRAGMA user_version`) this core reads and writes: the runtime's `CACHE_SCHEMA_VERSION`. */
const val CACHE_SCHEMA_VERSION = 1

/** `PRAGMA application_id` of every edgeopt cache file ("edop"): the runtime's `CACHE_APPLICATION_ID`. */
const val CACHE_APPLICATION_ID = 0x65646F70
const val DEFAULT_MAX_ENTRIES = 10_000
const val DEFAULT_MAX_BYTES = 16L * 1024 * 1024
const val DEFAULT_TTL_S = 7 * 24 * 3600.0

/** The first bytes every key's HMAC reads (the runtime's `KEY_DOMAIN`). */
private val KEY_DOMAIN = "edgeopt-cache-key/2\n".toByteArray(Charsets.US_ASCII)

/** Bytes of the per-install secret (the runtime's `SECRET_BYTES`). */
const val SECRET_BYTES = 32

/** Besides the model input, what the runtime puts in every key: the backend and which artifact of the bundle answered. */
fun keyOptions(backend: String, artifact: String): Map<String, String> = mapOf("artifact" to artifact, "backend" to backend)

/**
 * The cache key of one text (the runtime's `cache_key`): HMAC-SHA256 hex under [secret] of
 * `"edgeopt-cache-key/2\n" + fingerprint + "\n" + options + "\n" + text` in UTF-8 (lone surrogates passed
 * through); options are `k=v` sorted by key, `;`-joined. The text is keyed as given (after [cleanText]), with no
 * normalization: equal keys mean equal texts, which the tokenizer turns into equal model inputs.
 */
fun cacheKey(secret: ByteArray, fingerprint: String, text: String, options: Map<String, String> = emptyMap()): String {
    val opts = options.entries.sortedWith(compareBy(PyCompat.codePointOrder) { it.key }).joinToString(";") { "${it.key}=${it.value}" }
    val mac = Mac.getInstance("HmacSHA256")
    mac.init(SecretKeySpec(secret, "HmacSHA256"))
    mac.update(KEY_DOMAIN)
    return mac.doFinal(PyCompat.utf8SurrogatePass("$fingerprint\n$opts\n$text")).joinToString("") { "%02x".format(it) }
}

/**
 * The per-install secret the cache keys are made with (the runtime's `<cache>.key`): read from [file], or made
 * (random, owner-only) when it does not exist. Published with a hard link, so of two processes making it at once
 * both end up with the first. Keep it with the app's private files: without it, a copied cache file cannot be
 * searched for a guessed text.
 *
 * @throws CacheError the file is not a regular, owner-only file of [SECRET_BYTES] bytes (it is left as it is).
 */
fun loadOrCreateSecret(file: File): ByteArray {
    readSecret(file)?.let { return it }
    val path = file.toPath()
    val random = SecureRandom()
    val temp = path.resolveSibling(".${file.name}.${java.lang.Long.toHexString(random.nextLong())}.tmp")
    try {
        val ownerOnly = path.fileSystem.supportedFileAttributeViews().contains("posix")
        if (ownerOnly) Files.createFile(temp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")))
        else Files.createFile(temp)
        Files.write(temp, ByteArray(SECRET_BYTES).also { random.nextBytes(it) })
        try {
            Files.createLink(path, temp)
        } catch (e: FileAlreadyExistsException) {
            // another process made it first: use theirs
        }
    } catch (e: IOException) {
        throw CacheError("cannot write key file $file (${e.message}); point the cache at a directory the app can write", e)
    } finally {
        Files.deleteIfExists(temp)
    }
    return readSecret(file) ?: throw CacheError("key file $file vanished while it was made; try again")
}

private fun readSecret(file: File): ByteArray? {
    val path = file.toPath()
    if (Files.isSymbolicLink(path)) throw CacheError("key file $file is a symbolic link; remove it, a new key is made")
    if (!Files.exists(path)) return null
    if (!Files.isRegularFile(path)) throw CacheError("key file $file is not a regular file; remove it, a new key is made")
    if (path.fileSystem.supportedFileAttributeViews().contains("posix")) {
        val loose = Files.getPosixFilePermissions(path).filter { it.name.startsWith("GROUP") || it.name.startsWith("OTHERS") }
        if (loose.isNotEmpty()) {
            throw CacheError("key file $file can be read by other users ($loose); make it owner-only if only you ever had it, else remove it (a new key is made)")
        }
    }
    val bytes = Files.readAllBytes(path)
    if (bytes.size != SECRET_BYTES) {
        throw CacheError("key file $file holds ${bytes.size} bytes, not a $SECRET_BYTES-byte edgeopt cache key; remove it, a new key is made")
    }
    return bytes
}

private val SQLITE_MAGIC = "SQLite format 3\u0000".toByteArray(Charsets.US_ASCII)

/**
 * Why [file] is not one the cache may open, change or recreate (the runtime's `foreign_file_reason`); null when it
 * may: a path that does not exist, an empty file, or an SQLite database whose `application_id` is
 * [CACHE_APPLICATION_ID]. Anything else (a directory, a device, a CSV, another application's database) is only
 * looked at, never opened for writing. Unlike the runtime, a database with `application_id` 0 is refused too: the
 * app never wrote one (telling a pre-id runtime cache from someone else's needs a read-only open, which the
 * platform-free core does not have).
 */
fun foreignFileReason(file: File): String? {
    val path = file.toPath()
    if (!Files.exists(path)) return null // follows a symbolic link: what matters is the file written through it
    if (!Files.isRegularFile(path)) {
        val kind = if (Files.isDirectory(path)) "directory" else "special file"
        return "$file is a $kind, not a cache file"
    }
    val size = Files.size(path)
    if (size == 0L) return null
    val header = ByteArray(100)
    val read = try {
        Files.newInputStream(path).use { it.readNBytes(header, 0, header.size) }
    } catch (e: java.nio.file.NoSuchFileException) {
        return null // moved aside a moment ago
    }
    if (read < 72 || !header.copyOfRange(0, SQLITE_MAGIC.size).contentEquals(SQLITE_MAGIC)) {
        return "$file is not an edgeopt cache (a ${String.format(java.util.Locale.ROOT, "%,d", size)}-byte file that is not an SQLite database)"
    }
    val applicationId = java.nio.ByteBuffer.wrap(header, 68, 4).int
    if (applicationId == CACHE_APPLICATION_ID) return null
    if (applicationId != 0) return "$file is another application's SQLite database (application_id 0x${Integer.toHexString(applicationId)})"
    return "$file is an SQLite database without the edgeopt application_id (another application's, or a cache the app did not write)"
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
    /** The key of every [cacheKey] of this cache: [loadOrCreateSecret] beside the file, or one shared on purpose. */
    val secret: ByteArray,
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
        if (secret.size < 16) throw CacheError("secret must be at least 16 bytes; use loadOrCreateSecret(file)")
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

    /** One row to store; [text] is kept only with `storeText`. */
    data class Entry(val key: String, val fingerprint: String, val valueJson: String, val text: String? = null)

    /** Stores values in one transaction, then drops expired entries and evicts least recently used ones beyond the bounds. */
    fun putMany(entries: List<Entry>) {
        val now = clock()
        val expires = ttlS?.let { now + it }
        val rows = entries.mapNotNull { e ->
            val stored = if (storeText) e.text else null
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

    companion object {
        /**
         * Opens the cache in [file] with [opener] (`JdbcSqlDatabase::open`, `AndroidSqlDatabase::open`) after
         * checking that the file is the cache's own ([foreignFileReason]): a file that is not is left byte for byte
         * as it was.
         *
         * @throws CacheError naming the file when it is not a cache file, or as the constructor does.
         */
        fun open(
            file: File,
            secret: ByteArray,
            opener: (File) -> SqlDatabase,
            maxEntries: Int = DEFAULT_MAX_ENTRIES,
            maxBytes: Long = DEFAULT_MAX_BYTES,
            ttlS: Double? = DEFAULT_TTL_S,
            storeText: Boolean = false,
        ): ResultCache {
            foreignFileReason(file)?.let { throw CacheError("$it; left as it was: point the cache at a new file or an edgeopt cache") }
            return ResultCache(opener(file), secret, maxEntries, maxBytes, ttlS, storeText)
        }
    }

    private inline fun <T> sql(block: () -> T): T = try {
        block()
    } catch (e: EdgeoptException) {
        throw e
    } catch (e: Exception) {
        throw CacheError("result cache: ${e.message?.lineSequence()?.firstOrNull() ?: e.javaClass.simpleName}", e)
    }
}
