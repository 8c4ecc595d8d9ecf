package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlin.math.abs
import kotlin.math.sqrt

/**
 * The Kotlin embedder turns the real models' raw outputs into the Python runtime's unit vectors: int8 outputs
 * dequantized to exactly Python's float32 values, vectors within 1e-5 of Python's; and the whole path (tokenizer,
 * model, normalization, cache) on the golden texts.
 */
class EmbedderParityTest {
    private fun embedder(backend: String, model: TextModel = ReplayEmbedModel(backend), cache: ResultCache? = null) =
        TextEmbedder(EmbedGolden.manifest, EmbedGolden.tokenizer, model, cache)

    private fun assertClose(want: FloatArray, got: FloatArray, what: String, tolerance: Double = 1e-5) {
        assertEquals(want.size, got.size, what)
        val worst = want.indices.maxOf { abs(want[it].toDouble() - got[it].toDouble()) }
        assertTrue(worst <= tolerance, "$what: largest difference $worst > $tolerance")
    }

    @TestFactory
    fun `raw outputs give the runtime's unit vectors`(): List<DynamicTest> = EmbedGolden.backendNames.flatMap { backend ->
        val e = embedder(backend)
        (EmbedGolden.validCases + EmbedGolden.queries).map { case ->
            val name = case.optString("name", case.getString("text"))
            DynamicTest.dynamicTest("$backend: $name") {
                val entry = case.getJSONObject("backends").getJSONObject(backend)
                val raw = EmbedGolden.raw(entry, backend)
                if (raw is Logits.Quantized) {
                    // Dequantization is exact: the very float32 values the Python backend returned.
                    assertArrayEquals(EmbedGolden.float32s(entry.getString("raw_f32")), raw.toFloat32().single(), "$name: dequantized int8")
                    assertTrue(raw.values.single().all { it in -128..127 })
                }
                val vector = e.vectors(raw).single()
                assertClose(EmbedGolden.vector(entry), vector, "$backend $name")
                val norm = sqrt(vector.sumOf { it.toDouble() * it.toDouble() })
                assertEquals(1.0, norm, 1e-6, "$name: not a unit vector")
            }
        }
    }

    @Test
    fun `the float32 normalization is numpy's bit for bit`() {
        // Beyond the 1e-5 contract: normalizeRows sums the squares in numpy's pairwise order, so every value is
        // Python's. Should a numpy release change its summation, this fails while the 1e-5 tests still pass.
        var worst = 0.0
        var exact = 0
        var total = 0
        for (backend in EmbedGolden.backendNames) {
            val e = embedder(backend)
            for (case in EmbedGolden.validCases + EmbedGolden.queries) {
                val entry = case.getJSONObject("backends").getJSONObject(backend)
                val got = e.vectors(EmbedGolden.raw(entry, backend)).single()
                val want = EmbedGolden.vector(entry)
                for (i in got.indices) {
                    worst = maxOf(worst, abs(got[i].toDouble() - want[i].toDouble()))
                    if (got[i].toRawBits() == want[i].toRawBits()) exact++
                    total++
                }
            }
        }
        println("embedder parity: $exact of $total values bit-identical to Python's, largest difference $worst")
        assertEquals(total, exact, "values not bit-identical to numpy's (largest difference $worst)")
    }

    @TestFactory
    fun `the whole path embeds the golden texts as the runtime does`(): List<DynamicTest> = EmbedGolden.backendNames.map { backend ->
        DynamicTest.dynamicTest(backend) {
            val model = ReplayEmbedModel(backend)
            embedder(backend, model).use { e ->
                val texts = EmbedGolden.validCases.map { it.getString("text") }
                val details = e.embedDetails(texts)
                assertEquals(1, model.calls)
                details.zip(EmbedGolden.validCases).forEach { (got, case) ->
                    assertClose(EmbedGolden.vector(case.getJSONObject("backends").getJSONObject(backend)), got.vector, case.getString("name"))
                    assertEquals(case.getBoolean("truncated"), got.truncated, case.getString("name"))
                    assertEquals(false, got.cached)
                }
                assertTrue(details.any { it.truncated }, "no golden text was truncated")
                assertArrayEquals(details.first().vector, e.embedOne(texts.first()))
            }
        }
    }

    @Test
    fun `equal texts are embedded once, and bad texts get the runtime's errors`() {
        val model = ReplayEmbedModel("onnx")
        val e = embedder("onnx", model)
        val a = EmbedGolden.validCases[0].getString("text")
        val b = EmbedGolden.validCases[1].getString("text")
        val vectors = e.embed(listOf(a, b, a, a))
        assertEquals(2, model.rows)
        assertArrayEquals(vectors[0], vectors[2])
        for (case in EmbedGolden.cases.filter { it.has("error") }) {
            val error = case.getJSONObject("error")
            assertEquals("InputError", error.getString("type"))
            assertEquals(error.getString("message"), assertThrows<InputError> { e.embedOne(case.getString("text")) }.message)
            assertEquals("texts[1]: ${error.getString("message")}", assertThrows<InputError> { e.embed(listOf(a, case.getString("text"))) }.message)
        }
        assertEquals("texts is empty; pass at least one text", assertThrows<InputError> { e.embed(emptyList()) }.message)
    }

    @Test
    fun `pairwise summation follows numpy's blocks`() {
        // 1 + 2^-24 is lost when added to 1 alone, kept when paired first: the order is visible in float32.
        val tiny = Math.scalb(1f, -24)
        val a = FloatArray(16) { if (it == 0) 1f else tiny }
        // 8 accumulators: r0 = 1 + tiny (lost: 1), r1..r7 = 2 tiny; then ((r0 + r1) + ...) keeps 14 tiny.
        assertEquals(1f + 14 * tiny, pairwiseSum(a, 0, 16))
        var sequential = 0f
        a.forEach { sequential += it }
        assertEquals(1f, sequential)
        assertEquals(6f, pairwiseSum(floatArrayOf(1f, 2f, 3f), 0, 3))
        assertEquals(0f, pairwiseSum(FloatArray(0), 0, 0))
        val big = FloatArray(1000) { (it % 7).toFloat() / 3f }
        assertEquals(big.sumOf { it.toDouble() }, pairwiseSum(big, 0, big.size).toDouble(), 1e-3)
    }

    @Test
    fun `an output of the wrong shape is a clear model error`() {
        val e = embedder("onnx")
        val m = assertThrows<ModelError> { e.vectors(Logits.Float32(listOf(FloatArray(3)))) }
        assertEquals("the onnx model returned an embedding of shape (1, 3), expected (1, ${EmbedGolden.dim}); rebuild the bundle", m.message)
        assertArrayEquals(FloatArray(EmbedGolden.dim), e.vectors(Logits.Float32(listOf(FloatArray(EmbedGolden.dim)))).single(), "a zero row stays zero")
    }

    @Test
    fun `cache keys and values are the runtime's`() {
        val cache = ResultCache(JdbcSqlDatabase.open(File(Files.createTempDirectory("ecache").toFile(), "results.sqlite")), EmbedGolden.secret)
        for (backend in EmbedGolden.backendNames) {
            val info = EmbedGolden.backends.getJSONObject(backend)
            assertEquals(info.getString("artifact"), EmbedGolden.manifest.artifactFor(backend)?.first, REGENERATE_EMBED)
            val e = embedder(backend, cache = cache)
            for (case in EmbedGolden.validCases) {
                val entry = case.getJSONObject("backends").getJSONObject(backend)
                assertEquals(entry.getString("cache_key"), e.cacheKey(case.getString("text")), case.getString("name"))
            }
        }
        cache.close()
        val vector = EmbedGolden.vector(EmbedGolden.validCases.first().getJSONObject("backends").getJSONObject("onnx"))
        val value = embeddingCacheValue(vector, false)
        assertEquals("{\"embedding_f32\":\"${float32Base64(vector)}\",\"truncated\":false}", value)
        assertArrayEquals(vector, embeddingFromCache(value, EmbedGolden.dim)!!.vector)
        // What another client may have left under a key: a miss, never an exception.
        for (bad in listOf("{}", "[1]", "{\"embedding_f32\":\"!!\",\"truncated\":false}", "{\"embedding_f32\":\"AAAA\",\"truncated\":false}",
            "{\"embedding_f32\":\"${float32Base64(FloatArray(EmbedGolden.dim) { Float.NaN })}\",\"truncated\":false}",
            "{\"embedding_f32\":\"${float32Base64(vector)}\",\"truncated\":1}", "not json")) {
            assertEquals(null, embeddingFromCache(bad, EmbedGolden.dim), bad)
        }
    }

    @Test
    fun `with the Python embedder's cache file every text is a hit, with Python's vectors bit for bit`() {
        val info = EmbedGolden.json.getJSONObject("cache")
        val file = EmbedGolden.copy(info.getString("file"))
        val stored = JdbcSqlDatabase.open(file).use { db -> db.query("SELECT key, value FROM results") { it.string(0)!! to it.string(1)!! }.toMap() }
        val model = ReplayEmbedModel(info.getString("backend"))
        val cache = ResultCache(JdbcSqlDatabase.open(file), EmbedGolden.secret, clock = { info.getDouble("clock") })
        embedder(info.getString("backend"), model, cache).use { e ->
            val details = e.embedDetails(EmbedGolden.validCases.map { it.getString("text") })
            assertEquals(0, model.calls)
            details.zip(EmbedGolden.validCases).forEach { (got, case) ->
                val entry = case.getJSONObject("backends").getJSONObject(info.getString("backend"))
                assertEquals(true, got.cached)
                assertArrayEquals(EmbedGolden.vector(entry), got.vector, case.getString("name"))
                assertEquals(case.getBoolean("truncated"), got.truncated)
                // The Kotlin serializer writes the bytes Python wrote.
                assertEquals(stored.getValue(entry.getString("cache_key")), embeddingCacheValue(got.vector, got.truncated))
            }
        }
    }

    @Test
    fun `the Python runtime reads embeddings the app cached`() {
        val python = System.getProperty("edgeopt.python")
        assumeTrue(!python.isNullOrEmpty(), "-Dedgeopt.python is not set (run-tests.sh sets it when the venv exists)")
        val file = File(Files.createTempDirectory("kecache").toFile(), "results.sqlite")
        val written = LinkedHashMap<String, FloatArray>()
        val cache = ResultCache(JdbcSqlDatabase.open(file), EmbedGolden.secret)
        embedder("onnx", cache = cache).use { e ->
            val texts = EmbedGolden.validCases.map { it.getString("text") }
            texts.zip(e.embed(texts)).forEach { (text, vector) -> written[e.cacheKey(text)] = vector }
        }
        val script = """
            import json, sys, warnings
            warnings.simplefilter("error")
            from edgeopt_runtime import ResultCache
            from edgeopt_runtime.embedder import _from_cache
            cache = ResultCache(sys.argv[1], secret=bytes.fromhex(sys.argv[2]))
            out = {}
            for key in sys.argv[4:]:
                found = _from_cache(cache.get(key), int(sys.argv[3]))
                out[key] = None if found is None else [float(x) for x in found.vector]
            print(json.dumps(out))
        """.trimIndent()
        val secretHex = EmbedGolden.secret.joinToString("") { "%02x".format(it) }
        val process = ProcessBuilder(listOf(python, "-c", script, file.path, secretHex, EmbedGolden.dim.toString()) + written.keys)
            .redirectErrorStream(true).start()
        val output = process.inputStream.bufferedReader().readText()
        assertEquals(true, process.waitFor(120, TimeUnit.SECONDS))
        assertEquals(0, process.exitValue(), output)
        val answer = JSONObject(output.lines().last { it.isNotBlank() })
        for ((key, vector) in written) {
            val got = answer.optJSONArray(key) ?: throw AssertionError("Python found no vector for $key: $output")
            assertArrayEquals(vector, FloatArray(got.length()) { got.getDouble(it).toFloat() })
        }
    }
}
