package io.edgeopt.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Test
import java.io.File
import java.nio.file.Files

/** TTL, bounds, counters and schema checks of the JVM cache on a real SQLite file. */
class ResultCacheTest {
    private var now = 1000.0
    private val file = File(Files.createTempDirectory("cache").toFile(), "results.sqlite")
    private val fp = "a".repeat(64)

    private fun open(maxEntries: Int = 100, maxBytes: Long = 1 shl 20, ttl: Double? = 60.0) =
        ResultCache(JdbcSqlDatabase.open(file), ByteArray(32) { it.toByte() }, maxEntries, maxBytes, ttl, clock = { now })

    private fun value(label: String) = CachedResult(label, 0.75, mapOf("ham" to 0.75, "spam" to 0.25), false).toJson()

    @Test
    fun `a new file gets the runtime schema`() {
        open().close()
        JdbcSqlDatabase.open(file).use { db ->
            assertEquals(1L, db.query("PRAGMA user_version") { it.long(0) }.single())
            assertEquals(CACHE_APPLICATION_ID.toLong(), db.query("PRAGMA application_id") { it.long(0) }.single())
            assertEquals("wal", db.query("PRAGMA journal_mode") { it.string(0) }.single())
            val tables = db.query("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') ORDER BY name") { it.string(0) }
            assertEquals(listOf("counters", "results", "results_fingerprint", "results_last_used"), tables.filterNot { it!!.startsWith("sqlite_") })
        }
    }

    @Test
    fun `entries expire after the TTL and count as misses`() {
        open().use { c ->
            c.put("k", fp, value("ham"))
            now += 59
            assertNotNull(c.get("k"))
            now += 2
            assertNull(c.get("k"))
            assertEquals(CacheStats(hits = 1, misses = 1, evictions = 0, entries = 0, bytes = 0), c.stats())
        }
    }

    @Test
    fun `least recently used entries are evicted beyond max_entries`() {
        open(maxEntries = 2, ttl = null).use { c ->
            c.put("a", fp, value("ham")); now++
            c.put("b", fp, value("ham")); now++
            assertNotNull(c.get("a")); now++ // a is now more recent than b
            c.put("c", fp, value("spam"))
            assertNull(c.get("b"))
            assertNotNull(c.get("a"))
            assertEquals(1L, c.stats().evictions)
        }
    }

    @Test
    fun `max_bytes bounds the payload and an oversized entry is not stored`() {
        val size = 1 + value("ham").length.toLong()
        open(maxBytes = size * 2, ttl = null).use { c ->
            c.putMany(listOf("x", "y", "z").map { ResultCache.Entry(it, fp, value("ham")) })
            assertEquals(2L, c.stats().entries)
            assertEquals(size * 2, c.stats().bytes)
            c.put("big", fp, value("ham".repeat(100)))
            assertNull(c.get("big"))
        }
    }

    @Test
    fun `clear, invalidate and keepOnly`() {
        open().use { c ->
            c.put("a", fp, value("ham"))
            c.put("b", "b".repeat(64), value("ham"))
            assertEquals(1, c.keepOnly(fp))
            assertEquals(1, c.invalidate(fp))
            c.put("a", fp, value("ham"))
            c.get("a")
            assertEquals(1, c.clear())
            assertEquals(CacheStats(0, 0, 0, 0, 0), c.stats())
        }
    }

    @Test
    fun `a file from a newer runtime is refused, not rewritten`() {
        open().close()
        JdbcSqlDatabase.open(file).use { it.update("PRAGMA user_version = 2") }
        val e = assertThrows<CacheError> { open() }
        assertEquals("cache schema version 2 is newer than this app reads (1); update the app or use another cache file", e.message)
        JdbcSqlDatabase.open(file).use { db -> assertEquals(2L, db.query("PRAGMA user_version") { it.long(0) }.single()) }
    }

    @Test
    fun `bad bounds are rejected`() {
        assertEquals("max_entries 0 must be a positive integer", assertThrows<CacheError> { open(maxEntries = 0) }.message)
        assertThrows<CacheError> { open(ttl = 0.0) }
    }

    @Test
    fun `a value that is not shaped for these labels is a miss`() {
        assertNull(CachedResult.fromJson("{\"label\":\"x\"}", listOf("ham", "spam")))
        assertNull(CachedResult.fromJson(value("ham"), listOf("ham", "other")))
        assertNull(CachedResult.fromJson("not json", listOf("ham", "spam")))
    }

    @Test
    fun `files that are not the cache's are refused and left as they were`() {
        val dir = Files.createTempDirectory("foreign").toFile()
        val csv = File(dir, "people.csv").apply { writeText("name,label\nbob,ham\n") }
        val other = File(dir, "other.sqlite")
        JdbcSqlDatabase.open(other).use { db ->
            db.update("CREATE TABLE notes (body TEXT)")
            db.update("PRAGMA application_id = 1234")
        }
        val unmarked = File(dir, "unmarked.sqlite")
        JdbcSqlDatabase.open(unmarked).use { db -> db.update("CREATE TABLE notes (body TEXT)") }
        val reasons = mapOf(
            csv to "$csv is not an edgeopt cache (a 19-byte file that is not an SQLite database)",
            dir to "$dir is a directory, not a cache file",
            other to "$other is another application's SQLite database (application_id 0x4d2)",
            unmarked to "$unmarked is an SQLite database without the edgeopt application_id (another application's, or a cache the app did not write)",
        )
        val secret = ByteArray(32)
        for ((target, reason) in reasons) {
            val before = if (target.isFile) target.readBytes() else null
            val siblings = dir.list()!!.toSet()
            val error = assertThrows<CacheError> { ResultCache.open(target, secret, JdbcSqlDatabase::open) }
            assertEquals("$reason; left as it was: point the cache at a new file or an edgeopt cache", error.message)
            if (before != null) org.junit.jupiter.api.Assertions.assertArrayEquals(before, target.readBytes())
            assertEquals(siblings, dir.list()!!.toSet()) // no -wal, -shm or journal made beside it
        }
        // A missing path, an empty file and a cache of ours open.
        ResultCache.open(File(dir, "new.sqlite"), secret, JdbcSqlDatabase::open).close()
        ResultCache.open(File(dir, "new.sqlite"), secret, JdbcSqlDatabase::open).close()
        val empty = File(dir, "empty.sqlite").apply { writeBytes(ByteArray(0)) }
        ResultCache.open(empty, secret, JdbcSqlDatabase::open).close()
    }
}
