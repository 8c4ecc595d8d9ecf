package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import java.io.File
import java.nio.file.Files
import java.nio.file.attribute.PosixFilePermissions
import java.util.concurrent.TimeUnit

/** Same keys as the runtime, and each side reads the other's cache database. */
class CacheParityTest {
    private val cacheInfo: JSONObject get() = Golden.json.getJSONObject("cache")
    private val clock: Double get() = cacheInfo.getDouble("clock")

    private fun options(backend: String) =
        keyOptions(backend, Golden.json.getJSONObject("backends").getJSONObject(backend).getString("artifact"))

    private fun keyOf(text: String, backend: String): String = cacheKey(Golden.secret, Golden.fingerprint, cleanText(text), options(backend))

    @TestFactory
    fun `cache keys equal the runtime's`(): List<DynamicTest> = Golden.validCases.map { case ->
        DynamicTest.dynamicTest(case.getString("name")) {
            val backends = case.getJSONObject("backends")
            for (backend in backends.keys().asSequence().map { it.toString() }) {
                assertEquals(backends.getJSONObject(backend).getString("cache_key"), keyOf(case.getString("text"), backend), backend)
            }
        }
    }

    @Test
    fun `key options are serialized like the runtime's`() {
        val golden = Golden.json.getJSONObject("backends")
        for (backend in golden.keys().asSequence().map { it.toString() }) {
            val want = golden.getJSONObject(backend).getJSONObject("key_options")
            val got = options(backend)
            assertEquals(want.keys().asSequence().map { it.toString() }.toSet(), got.keys)
            got.forEach { (k, v) -> assertEquals(want.getString(k), v, k) }
        }
    }

    @Test
    fun `texts share a key only when the model reads them the same`() {
        // Control, format and whitespace characters the BERT normalizer deletes or splits on: "free\u001ccash"
        // (deleted: one word to the model) and "free cash" must never share an answer.
        val cases = Golden.json.getJSONArray("key_cases").objects()
        val keys = cases.map { keyOf(it.getString("text"), it.getString("backend")) }
        cases.forEachIndexed { i, case ->
            val e = Golden.tokenizer.encode(case.getString("text"))
            assertEquals(case.getJSONArray("input_ids").longs().toList(), e.inputIds.copyOf(e.length).toList(), case.getString("text"))
            assertEquals(case.getString("key"), keys[i], case.getString("text"))
        }
        for (i in cases.indices) for (j in cases.indices) {
            if (keys[i] != keys[j]) continue
            val same = cases[i].getJSONArray("input_ids").toString() == cases[j].getJSONArray("input_ids").toString() &&
                cases[i].getBoolean("truncated") == cases[j].getBoolean("truncated")
            assertTrue(same, "${cases[i].getString("text")} / ${cases[j].getString("text")} share a key, not a model input")
        }
        // A lone surrogate becomes U+FFFD in cleanText, as in the runtime: one text, one key.
        assertEquals(keyOf("lone \ud800 surrogate", "onnx"), keyOf("lone \ufffd surrogate", "onnx"))
    }

    @Test
    fun `the per-install secret is made once, owner-only, and a foreign key file is refused untouched`() {
        val dir = Files.createTempDirectory("secret").toFile()
        val file = File(dir, "results.sqlite.key")
        val first = loadOrCreateSecret(file)
        assertEquals(SECRET_BYTES, first.size)
        assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file.toPath())))
        assertArrayEquals(first, loadOrCreateSecret(file))
        assertEquals(listOf("results.sqlite.key"), dir.list()!!.toList())
        val short = File(dir, "short.key").apply { writeBytes(ByteArray(5)) }
        Files.setPosixFilePermissions(short.toPath(), PosixFilePermissions.fromString("rw-------"))
        assertTrue(assertThrows<CacheError> { loadOrCreateSecret(short) }.message!!.contains("holds 5 bytes, not a 32-byte edgeopt cache key"))
        val open = File(dir, "open.key").apply { writeBytes(ByteArray(32)) }
        Files.setPosixFilePermissions(open.toPath(), PosixFilePermissions.fromString("rw-r--r--"))
        assertTrue(assertThrows<CacheError> { loadOrCreateSecret(open) }.message!!.contains("can be read by other users"))
        assertEquals("rw-r--r--", PosixFilePermissions.toString(Files.getPosixFilePermissions(open.toPath())))
        val link = File(dir, "link.key").also { Files.createSymbolicLink(it.toPath(), file.toPath()) }
        assertTrue(assertThrows<CacheError> { loadOrCreateSecret(link) }.message!!.contains("is a symbolic link"))
        assertArrayEquals(ByteArray(5), short.readBytes())
    }

    private fun pythonCache(at: Double = clock): Pair<ResultCache, File> {
        val file = Golden.copy(cacheInfo.getString("file"))
        return ResultCache(JdbcSqlDatabase.open(file), Golden.secret, clock = { at }) to file
    }

    @Test
    fun `the app reads the cache database written by the Python runtime`() {
        val (cache, file) = pythonCache()
        cache.use {
            val rows = JdbcSqlDatabase.open(file).use { db -> db.query("SELECT key, value, text FROM results") { Triple(it.string(0)!!, it.string(1)!!, it.string(2)) } }
                .associateBy { it.first }
            for (case in Golden.validCases) {
                val want = case.getJSONObject("backends").getJSONObject(cacheInfo.getString("backend"))
                val key = want.getString("cache_key")
                val value = cache.get(key) ?: throw AssertionError("${case.getString("name")}: no entry for the Kotlin key $key")
                val result = CachedResult.fromJson(value, Golden.labels)!!
                assertEquals(want.getString("label"), result.label)
                val scores = want.getJSONArray("scores").doubles()
                Golden.labels.forEachIndexed { i, l -> assertEquals(scores[i], result.scores.getValue(l), 0.0) }
                assertEquals(case.getBoolean("truncated"), result.truncated)
                // The Kotlin serializer writes the very bytes Python wrote (sizes and max_bytes agree).
                assertEquals(value, result.toJson(), "${case.getString("name")}: value JSON differs from Python's")
                assertEquals(cleanText(case.getString("text")), rows.getValue(key).third)
            }
            assertEquals(Golden.validCases.size.toLong(), cache.stats().hits) // Python's run had no hits
        }
    }

    @Test
    fun `expired entries are misses and other fingerprints are purged`() {
        val (cache, file) = pythonCache()
        cache.use {
            val expired = cacheInfo.getString("expired_key")
            val foreign = cacheInfo.getString("foreign_key")
            val misses = cache.stats().misses // the counters live in the file: Python's misses are in it
            assertNull(cache.get(expired))
            assertEquals(misses + 1, cache.stats().misses)
            assertNotNull(cache.get(foreign))
            assertEquals(1, cache.keepOnly(Golden.fingerprint))
            assertNull(cache.get(foreign))
            assertEquals(Golden.validCases.size.toLong(), cache.stats().entries)
        }
        JdbcSqlDatabase.open(file).use { db ->
            assertEquals(0L, db.query("SELECT count(*) FROM results WHERE key = ?", cacheInfo.getString("expired_key")) { it.long(0) }.single())
        }
        // A week and a day later every entry has expired.
        val (later, _) = pythonCache(clock + cacheInfo.getDouble("ttl_s") + 1)
        later.use { c -> assertNull(c.get(Golden.validCases.first().getJSONObject("backends").getJSONObject("onnx").getString("cache_key"))) }
    }

    @Test
    fun `the Python runtime reads a cache database written by the app`() {
        val python = System.getProperty("edgeopt.python")
        assumeTrue(!python.isNullOrEmpty(), "-Dedgeopt.python is not set (run-tests.sh sets it when the venv exists)")
        val file = File(Files.createTempDirectory("kcache").toFile(), "results.sqlite")
        val written = LinkedHashMap<String, CachedResult>()
        ResultCache(JdbcSqlDatabase.open(file), Golden.secret, clock = { clock }, storeText = true).use { cache ->
            for (case in Golden.validCases) {
                val g = case.getJSONObject("backends").getJSONObject("onnx")
                val scores = g.getJSONArray("scores").doubles()
                val value = CachedResult(g.getString("label"), g.getDouble("score"), Golden.labels.indices.associate { Golden.labels[it] to scores[it] }, case.getBoolean("truncated"))
                val key = keyOf(case.getString("text"), "onnx")
                cache.put(key, Golden.fingerprint, value.toJson(), case.getString("text"))
                written[key] = value
            }
        }
        val script = """
            import json, sys, warnings
            warnings.simplefilter("error")  # a CacheWarning (unreadable file, newer schema) must fail the test
            from edgeopt_runtime import ResultCache
            cache = ResultCache(sys.argv[1], clock=lambda: float(sys.argv[2]), secret=bytes.fromhex(sys.argv[3]))
            print(json.dumps({"values": {k: cache.get(k) for k in sys.argv[4:]}, "stats": cache.stats().to_dict()}))
        """.trimIndent()
        val secretHex = Golden.secret.joinToString("") { "%02x".format(it) }
        val process = ProcessBuilder(listOf(python, "-c", script, file.path, clock.toString(), secretHex) + written.keys).redirectErrorStream(true).start()
        val output = process.inputStream.bufferedReader().readText()
        assertEquals(true, process.waitFor(120, TimeUnit.SECONDS))
        assertEquals(0, process.exitValue(), output)
        val answer = JSONObject(output.lines().last { it.isNotBlank() })
        val values = answer.getJSONObject("values")
        for ((key, value) in written) {
            val got = values.optJSONObject(key) ?: throw AssertionError("Python found no entry for $key: $output")
            assertEquals(value, CachedResult.fromJson(got.toString(), Golden.labels))
        }
        assertEquals(written.size.toLong(), answer.getJSONObject("stats").getLong("hits"))
    }
}
