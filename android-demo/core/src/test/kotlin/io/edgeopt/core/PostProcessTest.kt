package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import kotlin.math.abs

/** Labels and scores from the golden logits equal the Python runtime's predictions (float and int8 outputs). */
class PostProcessTest {
    private fun backendCases(backend: String): List<Pair<String, JSONObject>> =
        Golden.validCases.mapNotNull { c -> c.optJSONObject("backends")?.optJSONObject(backend)?.let { c.getString("name") to it } }

    private fun assertScores(name: String, want: JSONObject, got: Classification) {
        assertEquals(want.getString("label"), got.label, name)
        val scores = want.getJSONArray("scores").doubles()
        Golden.labels.forEachIndexed { i, label ->
            // Same float64 softmax on both sides; only exp()'s last bit may differ between libms.
            assertEquals(scores[i], got.scores.getValue(label), 1e-12, "$name: score of $label")
        }
        assertEquals(want.getDouble("score"), got.score, 1e-12, name)
    }

    @TestFactory
    fun `float logits give the ONNX Runtime labels`(): List<DynamicTest> = backendCases("onnx").map { (name, want) ->
        DynamicTest.dynamicTest(name) {
            val row = want.getJSONArray("logits").doubles().map { it.toFloat() }.toFloatArray()
            assertScores(name, want, classify(Logits.Float32(listOf(row)), Golden.labels).single())
        }
    }

    @TestFactory
    fun `int8 logits with scale and zero point give the LiteRT labels`(): List<DynamicTest> {
        val q = Golden.json.getJSONObject("backends").optJSONObject("tflite")?.optJSONObject("output_quantization")
            ?: return emptyList()
        val quant = Quantization(q.getDouble("scale"), q.getInt("zero_point"))
        assertEquals(Golden.manifest.artifactFor("tflite")?.second?.outputQuantization, quant, REGENERATE)
        return backendCases("tflite").map { (name, want) ->
            DynamicTest.dynamicTest(name) {
                val raw = want.getJSONArray("int8_logits").ints()
                assertEquals(true, raw.all { it in -128..127 })
                val got = classify(Logits.Quantized(listOf(raw), quant), Golden.labels).single()
                assertScores(name, want, got)
                val floats = Logits.Quantized(listOf(raw), quant).toFloat().single()
                val expected = want.getJSONArray("logits").doubles()
                floats.indices.forEach { assertEquals(expected[it], floats[it], 0.0, "$name: dequantized logit $it") }
            }
        }
    }

    @Test
    fun `logits of the wrong shape are a clear model error`() {
        val e = assertThrows<ModelError> { classify(Logits.Float32(listOf(floatArrayOf(1f, 2f, 3f))), listOf("ham", "spam")) }
        assertEquals("the model returned logits of shape (1, 3), expected (1, 2) for labels [ham, spam]; rebuild the bundle", e.message)
    }

    @Test
    fun `ties go to the first label like numpy argmax`() {
        val c = classify(Logits.Float32(listOf(floatArrayOf(0.5f, 0.5f))), listOf("a", "b")).single()
        assertEquals("a", c.label)
        assertEquals(0.5, c.score)
        assertEquals(1.0, softmax(doubleArrayOf(1000.0, -1000.0)).first(), 0.0)
        assertEquals(true, abs(softmax(doubleArrayOf(1.0, 2.0, 3.0)).sum() - 1.0) < 1e-15)
    }
}
